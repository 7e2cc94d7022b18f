"""Storage: everything that speaks SQL to PostgreSQL (the schema itself is ``sql/``). Imports
the core and the settings; never Ray or HTTP."""
