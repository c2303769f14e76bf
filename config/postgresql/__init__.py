"""PostgreSQL as Django's own backend, with a health check that costs no round trip when
there is no news (``base.DatabaseWrapper``). ``config.settings`` names it as the engine
for every postgresql:// ``DATABASE_URL``."""
