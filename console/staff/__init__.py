"""Staff accounts: passwords, one-time links, sessions and the sign-in throttle."""
