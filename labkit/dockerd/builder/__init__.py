"""`docker build` in labkit-dockerd: the classic (pre-BuildKit) builder (moby's `builder/`).

Modules, from the request to the layer:
    steps        the instructions run one by one, the layer cache, the CLI's messages
    dockerfile   the Dockerfile's text -> instructions; variables ($X, ${X:-d})
    context      the build context archive, read in place; .dockerignore; COPY's selection
                 and its cache checksum
    config       what ENV, CMD, LABEL … do to an image config (also `docker commit --change`)
    backend      what the steps need from the daemon: pull, run a container, commit; the
                 POST /build options

Which clients take this builder: labkit-dockerd's /_ping answers `Builder-Version: 1`, and the
docker CLI (23 and later, 28 here) then uses its classic builder by itself -- no buildx
plugin needed -- printing "DEPRECATED: The legacy builder is deprecated …"; Debian's 20.10
CLI uses it by default (or with DOCKER_BUILDKIT=0); docker-py's images.build always does.
All of them send the context as a tar in the body of POST /build.
"""
