from dlconcepts.cli import main

raise SystemExit(main())
