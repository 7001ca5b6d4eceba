"""The smoke suite of an installed agentation-mcp: `scripts/smoke-installed` builds the wheel, installs it
into a fresh virtual environment, and runs these tests from a folder outside the checkout.

They only start the installed command as other processes, in a clean environment; nothing here imports
the package. Without `AGENTATION_INSTALLED_VENV` (a plain test run) they skip.
"""
