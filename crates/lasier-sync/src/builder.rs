//! The builder: written once in `lasier-core`, over this facade's storage
//! trait.

use lasier_core::Storage;

lasier_core::__define_builder!(Storage, Steps);
