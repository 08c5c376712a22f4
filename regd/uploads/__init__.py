"""Upload sessions: the state machine, the session service, the janitor."""
