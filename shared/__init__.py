"""What every Salesbook service uses: settings, database, money, auth, errors, events, messaging."""
