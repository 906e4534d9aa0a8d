"""The user's process: what repro injects (seeding), the hook that runs inside it, what it writes back (hookprobe), probes run by its interpreter."""
