"""Turn bytes into neutral content: e-mails into headers, addresses, bodies and attachments; forms (.docx, PDF)
into headings, paragraphs and tables. Knows nothing of programmes, databases or networks."""
