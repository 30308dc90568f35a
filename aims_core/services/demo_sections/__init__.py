"""Demo seeding for services that are single modules: one module per section of the demo file
(aims_core/data/demo_org.yaml), each with `load_demo(uow, actor, section)`, so the domain
services hold no demo data. Service packages keep theirs in their own `demo.py`."""
