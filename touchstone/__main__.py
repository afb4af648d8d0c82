from touchstone.cli import main

raise SystemExit(main())
