"""Events: an association's colloquia, round tables and meetings, federated as Mobilizon does
(issue 18). ``fields`` reads what clients send, ``publishing`` publishes, edits and cancels,
``participation`` handles ``Join``/``Accept``/``Reject``/``Leave``, ``remote`` keeps peers'
events, ``calendar`` renders ICS."""
