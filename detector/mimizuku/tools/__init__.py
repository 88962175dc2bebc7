"""Tools around the product: the alert generator and the rules check."""
