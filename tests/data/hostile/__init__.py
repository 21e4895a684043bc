"""The hostile-input corpus: broken, odd and malicious data files, each with its exact outcome."""
