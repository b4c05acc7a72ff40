"""The agency's signing certificate in the console: what it is, when it expires, and its replacement."""
