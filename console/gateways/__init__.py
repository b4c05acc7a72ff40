"""The agency's payment methods and its gateways' merchant settings in the console."""
