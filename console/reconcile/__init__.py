"""Reconciliation in the console: imports, running a day, the exceptions queue and the held bank credits."""
