"""fibo-soap: a typed, safe client for the FIBO SMS gateway."""
