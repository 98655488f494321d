from exportsathi_db.cli import main

raise SystemExit(main())
