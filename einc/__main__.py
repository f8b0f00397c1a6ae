from einc.cli import main

raise SystemExit(main())
