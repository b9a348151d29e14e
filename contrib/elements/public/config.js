// Where Latchkey's public API is. Replace this file when deploying (the
// browser tests serve their own); the default is the quickstart's.
window.LATCHKEY_URL = "http://127.0.0.1:4433"
