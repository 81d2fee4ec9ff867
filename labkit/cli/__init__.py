"""labkit.cli — `labkit`, a docker-like command line client of the Engine API (layer L5).

It speaks to whatever daemon DOCKER_HOST (or -H) names — labkit-dockerd by default, a real
dockerd just as well — through labkit.client, and makes the same calls in the same order as
the docker CLI, so the traffic of `labkit run hello-world` and `docker run hello-world` is the
same. It also carries the lab's own commands (`labkit lab up|down|status|reset|images|
workspace`) and the course's grading (`labkit grade`).

Modules, one verb per file as in runc, from the user inwards:

    main        argument parsing, DOCKER_HOST, turning every failure into a message and an
                exit status (never a traceback)
    run         create -> (404: pull) -> attach -> wait -> start -> exit with the status
    pull        POST /images/create and its progress stream
    ps, images, rm, rmi, version      the listing and removal commands
    lab         `labkit lab …`, a thin front end to labkit.lab (and labkit.course's workspace)
    grade       `labkit grade …`, a thin front end to labkit.course's grading
    output      docker's table, duration, size and progress formatting
"""
