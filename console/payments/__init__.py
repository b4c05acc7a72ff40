"""Finance staff's payment pages: search, export, and one payment with its dossier, attempts and history."""
