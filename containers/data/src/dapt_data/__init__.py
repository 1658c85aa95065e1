"""Training data for domain adaptation: ingest, clean, redact, dedup, decontaminate, mix."""
