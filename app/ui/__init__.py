"""The page's user interface: a reactive store (store.py), chat state and intents (chat.py), the
backends the page chats with (connect.py) and DOM views over them (view.py)."""
