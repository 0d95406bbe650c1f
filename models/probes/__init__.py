"""Downstream probes as the paper measured them: secondary structure (Q3/Q8), localization (Q10), membrane (Q2)."""
