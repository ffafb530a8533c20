"""`largo serve`: a local web playground for trained models (FastAPI, one static page, a one-at-a-time job queue).

`catalog` lists the models and caches loaded ones, `jobs` runs generations one at a time, `generation` is what
the worker computes, `app` is the FastAPI app (fastapi and uvicorn are the optional extra `largo[serve]`)."""
