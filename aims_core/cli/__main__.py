"""`python -m aims_core.cli`: how `aims up` starts its HTTP app with the same interpreter."""

from aims_core.cli import main

main()
