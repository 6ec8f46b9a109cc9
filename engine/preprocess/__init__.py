"""SAR and optical preprocessing chains and the robust normalisation record."""
