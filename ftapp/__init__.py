"""ftapp service layer: use cases, validation rules and orchestration over ``storage``."""
