"""The audit log: one hash chain per agency (and one for the province), written in the transaction of the change."""
