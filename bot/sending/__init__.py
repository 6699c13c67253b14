"""Sending: the outbox drain (claim, send, record, exactly once) and the SMTP / ``.eml`` sender it hands each
e-mail to."""
