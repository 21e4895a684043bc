"""Knowledge bases: a company's documents chunked, embedded and searched (dense + keyword), with access tags."""
