"""The edge of hubbot: mailboxes, the workflow joining verdicts to storage, the outbox sender, the scheduler, the
calendar jobs and the ``hubbot`` command line."""
