//! The scenario the DNS fuzz targets ask in: two networks, aliases shared
//! (round-robin) and not, an internal network, upstreams.

use std::path::Path;
use std::sync::OnceLock;

use vswitch::dns::NameTable;

pub const WORLD: &str = r#"
name = "fuzz"
[[machine]]
name = "host"
resolvers = ["ns1"]
[[external]]
name = "ns1"
ip = "198.18.0.53"
[[network]]
name = "n1"
subnet = "10.1.0.0/24"
[[network]]
name = "n2"
subnet = "10.2.0.0/24"
internal = true
[[container]]
name = "web"
networks = [{ name = "n1", aliases = ["www", "pool"] }]
[[container]]
name = "web2"
networks = [{ name = "n1", aliases = ["pool"] }, "n2"]
[[container]]
name = "lonely"
networks = ["n2"]
"#;

pub fn table() -> &'static NameTable {
    static T: OnceLock<NameTable> = OnceLock::new();
    T.get_or_init(|| {
        let plan = vswitch::scenario::parse_str(Path::new("fuzz.toml"), WORLD).expect("valid");
        NameTable::from_plan(&plan)
    })
}
