"""What hub staff get from the bot and run against it: read-side views of applications, reminders, the daily
digest, the export, and the scheduled jobs that queue them through the outbox."""
