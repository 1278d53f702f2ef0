"""Learning after deployment: feedback parsing and recording, the online model, head refits."""
