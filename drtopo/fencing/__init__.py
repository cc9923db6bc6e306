"""The primary lease across regions: a record in three stores (lease), kept by a guard (guard) that fences its own
database (fence) when it cannot keep a majority; promote takes the next epoch (quorum) and waits the old one out."""
