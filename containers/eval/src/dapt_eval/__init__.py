"""dapt-eval: evaluation core for domain-adapted LLMs."""
