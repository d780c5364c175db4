"""Fleet's database: SQLModel tables, engines and transactions, repositories, migrations."""
