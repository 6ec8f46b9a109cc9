"""Processing algorithms, one module each; the provider discovers them (see provider.py)."""
