"""The gateway contract suite: the same scenarios run against every payment adapter (see test_contract.py)."""
