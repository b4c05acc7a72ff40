"""Signed e-receipts and e-invoices in the tax authority's XML format: model -> XML -> validation -> signing ->
storage -> verification."""
