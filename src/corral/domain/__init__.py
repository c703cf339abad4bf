"""Rules of Corral, independent of HTTP: accounts, registration, targets, deployments."""
