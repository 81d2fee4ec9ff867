"""labkit.cli — `labkit`, a docker-like command line client of the Engine API (layer L5).

It speaks to whatever daemon DOCKER_HOST (or -H) names — labkit-dockerd by default, a real
dockerd just as well — through labkit.client, and makes the same calls in the same order as
the docker CLI, so the traffic of `labkit run hello-world` and `docker run hello-world` is the
same. It also carries the lab's own commands (`labkit lab up|down|status|reset|images|
workspace`) and the course's grading (`labkit grade`).

Modules, one verb per file as in runc, from the user inwards:

    main        argument parsing, DOCKER_HOST, turning every failure into a message and an
                exit status (never a traceback)
    run         create -> (404: pull) -> attach -> wait -> start -> exit with the status; the
                flags (-e -v -m --pids-limit -p --network -w -u --entrypoint -h --rm -d -it)
    exec        a second process in a running container (exec create, start upgraded, inspect)
    logs        -f, --tail, -t; stdout and stderr split again (labkit.stdcopy)
    lifecycle   stop, start (-a -i: the run session again), restart, kill
    inspect     docker's JSON, or --format through `template` (a small Go-template subset)
    build       the context tar (.dockerignore applied: labkit.dockerignore), POST /build
    pull, push  POST /images/create, /images/{name}/push: progress drawn by output.ProgressPrinter
    tag, ps, images, rm, rmi, version, info      the other verbs
    lab         `labkit lab …`, a thin front end to labkit.lab (and labkit.course's workspace)
    grade       `labkit grade …`, a thin front end to labkit.course's grading
    output      docker's table, duration, size and progress formatting
    template    --format's {{.Field}}, {{json .X}}, index, upper, lower, join
"""
