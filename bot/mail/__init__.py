"""Mail sources: where the bot reads a hub's mailbox from. ``source`` is the shape every source has (a cursor in,
new messages out, in UID order); ``imap`` (password or OAuth2) and ``maildir`` are the two kinds there are."""
