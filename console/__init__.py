"""The staff console: staff accounts, their sessions and the pages they sign in to, and the tamper-evident audit log
of what staff do. Imports the domain packages below it; only the composition root (``lephi``) imports it."""
