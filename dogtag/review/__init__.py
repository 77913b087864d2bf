"""The review page: `dogtag review FOLDER...`, a local web app to check and correct tags, and add photos.

Each file is one idea: `library` (the tagged folders as the page sees them, and saving a
correction), `jobs` (tagging in the background, with progress), `thumbnails` (cached small and
large renditions), `uploads` (photos added from a browser), `security` (token, Host header, paths),
`app` (the FastAPI app: the page and /api), `server` (all of it put together, on a socket) and
`cli` (the command). The page itself is plain HTML, CSS and JS in `static/`. Only `app`, `server`
and `cli` need FastAPI and uvicorn (the `review` extra); nothing here imports TensorFlow.
"""
