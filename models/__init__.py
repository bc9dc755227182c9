"""Generation backends behind one small batch interface. Never imports Django."""
