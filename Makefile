.PHONY: run test bench openapi fmt screenshots mutate

# Install the service and run it with embedded defaults (SQLite under var/, demo data, sandbox gateway).
run:
	scripts/bootstrap
	.venv/bin/lephi serve

# Install dev dependencies and run the whole check and test suite.
test:
	scripts/test

bench:
	scripts/bootstrap --dev
	.venv/bin/python -m bench.payments_create

openapi:
	.venv/bin/lephi openapi > openapi/openapi.json

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# Screenshots of the payer's page and every console page, office and phone widths, into docs/screenshots/.
screenshots:
	scripts/bootstrap --dev
	.venv/bin/python -m devtools.screenshots docs/screenshots

# Mutation testing of the critical modules, each against its own tests (docs/testing.md); NAME=words runs one.
mutate:
	scripts/bootstrap --dev
	scripts/mutate $(NAME)
