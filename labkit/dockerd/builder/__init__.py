"""`docker build` in labkit-dockerd: the classic (pre-BuildKit) builder (moby's `builder/`).

Modules, from the request to the layer:
    steps        the instructions run one by one, the layer cache, the CLI's messages
    dockerfile   the Dockerfile's text -> instructions; variables ($X, ${X:-d})
    context      the build context archive, read in place; .dockerignore; COPY's selection
                 and its cache checksum
    backend      what the steps need from the daemon: pull, run a container, commit
"""
