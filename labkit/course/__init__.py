"""The course machinery: student workspaces, graded checkpoints, diagrams and slides.

The course sits above the lab: it may import labkit.lab (whose implementations module says
which implementation runs each layer), and nothing of the lab or the engine imports it.

Modules, from the one nearest the student to the one nearest the reference code:

    labkit.course.__main__        `python -m labkit.course workspace DIR | grade [cp01 …] | status`
    labkit.course.grading         `grade()`: runs the checkpoints, prints the score table, writes reports
    labkit.course.pytest_plugin   the pytest side: markers cpNN/points/hint/depends, BLOCKED, JSON report
    labkit.course.workspace       `generate_workspace()`: the reference with its solutions stripped
    (labkit.lab.implementations   `load()`, `resolve_module()`, `resolve_binary()`: the configured layers)
    labkit.course.diagrams        graphviz drawings: process tree, layers, API requests, image graph
    labkit.course.apiproxy        a logging unix-socket proxy that shows the Engine API requests a CLI makes
    labkit.course.slides          builds each chapter's deck offline into one self-contained HTML file
"""
