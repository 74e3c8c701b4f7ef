//! The builder: written once in `lasier-core`, over this facade's storage
//! trait.

use lasier_core::AsyncStorage;

lasier_core::__define_builder!(AsyncStorage, AsyncSteps);
