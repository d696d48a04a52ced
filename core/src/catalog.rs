//! The catalog: server-side prices and purchase limits. A price sent by a
//! client is never an input here; orders capture the catalog price at
//! creation ([`Catalog::price_items`]).

use crate::ids::Sku;
use crate::money::Cents;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most lines one order may have.
pub const LINES_PER_ORDER_MAX: usize = 16;
/// Most units of one SKU one order line may ask for, whatever the product says.
pub const QTY_PER_LINE_MAX: u32 = 100;
/// The most one order may total: 99,999,999 cents, the most one card payment
/// takes (a payment provider's cap, and the fake PSP's), so no order is taken
/// that could never be paid.
pub const ORDER_TOTAL_MAX: Cents = Cents(99_999_999);

/// A product for sale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The product id.
    pub sku: Sku,
    /// Display name.
    pub name: String,
    /// Unit price, authoritative.
    pub price: Cents,
    /// Most units one order line may ask for (capped by [`QTY_PER_LINE_MAX`]).
    pub max_qty_per_order: u32,
    /// Most units one customer may hold across live orders (anti-scalping);
    /// `None` means no limit.
    pub per_customer_limit: Option<u32>,
}

/// One requested line, as the client sent it (no price: prices come from the catalog).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRequest {
    /// What to buy.
    pub sku: Sku,
    /// How many.
    pub qty: u32,
}

/// One priced order line: the unit price is captured from the catalog at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// What was bought.
    pub sku: Sku,
    /// How many units.
    pub qty: u32,
    /// Catalog unit price at the moment the order was created.
    pub unit_price: Cents,
}

/// Why a set of requested items cannot become an order. Each is a client error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ItemsRejected {
    /// No lines at all.
    #[error("an order needs at least one item")]
    Empty,
    /// More lines than [`LINES_PER_ORDER_MAX`].
    #[error("an order may have at most {max} lines; this one has {lines}")]
    TooManyLines {
        /// Lines sent.
        lines: usize,
        /// The limit.
        max: usize,
    },
    /// The same SKU on two lines.
    #[error("sku {sku} appears on more than one line; send it once with the total qty")]
    DuplicateSku {
        /// The repeated SKU.
        sku: Sku,
    },
    /// A SKU the catalog does not have.
    #[error("unknown sku {sku}")]
    UnknownSku {
        /// The unknown SKU.
        sku: Sku,
    },
    /// A quantity of zero.
    #[error("qty for {sku} must be at least 1")]
    ZeroQty {
        /// The SKU.
        sku: Sku,
    },
    /// A quantity over the per-order limit.
    #[error("qty {qty} for {sku} is above the per-order limit of {max}")]
    QtyAboveLimit {
        /// The SKU.
        sku: Sku,
        /// Asked for.
        qty: u32,
        /// Allowed.
        max: u32,
    },
    /// The total does not fit in the money type.
    #[error("the order total overflows")]
    TotalOverflow,
    /// The total is more than [`ORDER_TOTAL_MAX`]: no payment could cover it.
    #[error("the order totals {total}; one order may total at most {max}")]
    TotalAboveLimit {
        /// The order's total.
        total: Cents,
        /// The limit.
        max: Cents,
    },
}

/// The product list, keyed by SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    products: BTreeMap<Sku, Product>,
}

impl Catalog {
    /// A catalog of `products`; a later product with the same SKU replaces an earlier one.
    pub fn new(products: impl IntoIterator<Item = Product>) -> Catalog {
        Catalog {
            products: products.into_iter().map(|p| (p.sku.clone(), p)).collect(),
        }
    }

    /// The product with this SKU.
    pub fn get(&self, sku: &Sku) -> Option<&Product> {
        self.products.get(sku)
    }

    /// All products in SKU order.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    /// Validates requested items and prices them from the catalog, returning
    /// the lines and the total.
    pub fn price_items(
        &self,
        items: &[ItemRequest],
    ) -> Result<(Vec<OrderLine>, Cents), ItemsRejected> {
        if items.is_empty() {
            return Err(ItemsRejected::Empty);
        }
        if items.len() > LINES_PER_ORDER_MAX {
            return Err(ItemsRejected::TooManyLines {
                lines: items.len(),
                max: LINES_PER_ORDER_MAX,
            });
        }
        let mut lines = Vec::with_capacity(items.len());
        let mut total = Cents::ZERO;
        for (i, item) in items.iter().enumerate() {
            if items[..i].iter().any(|earlier| earlier.sku == item.sku) {
                return Err(ItemsRejected::DuplicateSku {
                    sku: item.sku.clone(),
                });
            }
            let product =
                self.products
                    .get(&item.sku)
                    .ok_or_else(|| ItemsRejected::UnknownSku {
                        sku: item.sku.clone(),
                    })?;
            let max = product.max_qty_per_order.min(QTY_PER_LINE_MAX);
            if item.qty == 0 {
                return Err(ItemsRejected::ZeroQty {
                    sku: item.sku.clone(),
                });
            }
            if item.qty > max {
                return Err(ItemsRejected::QtyAboveLimit {
                    sku: item.sku.clone(),
                    qty: item.qty,
                    max,
                });
            }
            let line_total = product
                .price
                .checked_mul(item.qty)
                .map_err(|_| ItemsRejected::TotalOverflow)?;
            total = total
                .checked_add(line_total)
                .map_err(|_| ItemsRejected::TotalOverflow)?;
            lines.push(OrderLine {
                sku: item.sku.clone(),
                qty: item.qty,
                unit_price: product.price,
            });
        }
        if total > ORDER_TOTAL_MAX {
            return Err(ItemsRejected::TotalAboveLimit {
                total,
                max: ORDER_TOTAL_MAX,
            });
        }
        Ok((lines, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    fn catalog() -> Catalog {
        Catalog::new([
            Product {
                sku: sku("hat"),
                name: "Hat".into(),
                price: Cents(1500),
                max_qty_per_order: 5,
                per_customer_limit: None,
            },
            Product {
                sku: sku("gold"),
                name: "Gold bar".into(),
                price: Cents(u64::MAX / 2),
                max_qty_per_order: 10,
                per_customer_limit: Some(1),
            },
        ])
    }

    fn item(s: &str, qty: u32) -> ItemRequest {
        ItemRequest { sku: sku(s), qty }
    }

    #[test]
    fn prices_come_from_the_catalog() {
        let (lines, total) = catalog().price_items(&[item("hat", 3)]).unwrap();
        assert_eq!(lines[0].unit_price, Cents(1500));
        assert_eq!(total, Cents(4500));
    }

    #[test]
    fn every_bad_item_list_is_rejected_with_its_reason() {
        let c = catalog();
        assert_eq!(c.price_items(&[]), Err(ItemsRejected::Empty));
        assert!(matches!(
            c.price_items(&[item("nope", 1)]),
            Err(ItemsRejected::UnknownSku { .. })
        ));
        assert!(matches!(
            c.price_items(&[item("hat", 0)]),
            Err(ItemsRejected::ZeroQty { .. })
        ));
        assert!(matches!(
            c.price_items(&[item("hat", 6)]),
            Err(ItemsRejected::QtyAboveLimit { max: 5, .. })
        ));
        assert!(matches!(
            c.price_items(&[item("hat", 1), item("hat", 1)]),
            Err(ItemsRejected::DuplicateSku { .. })
        ));
        assert_eq!(
            c.price_items(&[item("gold", 3)]),
            Err(ItemsRejected::TotalOverflow)
        );
        let many: Vec<_> = (0..=LINES_PER_ORDER_MAX).map(|_| item("hat", 1)).collect();
        assert!(matches!(
            c.price_items(&many),
            Err(ItemsRejected::TooManyLines { .. })
        ));
    }

    #[test]
    fn each_limit_admits_its_bound_and_refuses_one_more() {
        // Proves: qty = max_qty_per_order is accepted and max + 1 refused; the global per-line
        // cap applies when a product allows more; exactly LINES_PER_ORDER_MAX lines are fine.
        let c = catalog();
        assert!(c.price_items(&[item("hat", 5)]).is_ok());
        let generous = Catalog::new([Product {
            sku: sku("pin"),
            name: "Pin".into(),
            price: Cents(1),
            max_qty_per_order: 1_000,
            per_customer_limit: None,
        }]);
        assert_eq!(
            generous
                .price_items(&[item("pin", QTY_PER_LINE_MAX)])
                .unwrap()
                .1,
            Cents(u64::from(QTY_PER_LINE_MAX))
        );
        assert!(matches!(
            generous.price_items(&[item("pin", QTY_PER_LINE_MAX + 1)]),
            Err(ItemsRejected::QtyAboveLimit {
                max: QTY_PER_LINE_MAX,
                ..
            })
        ));
        let wide = Catalog::new((0..=LINES_PER_ORDER_MAX).map(|i| Product {
            sku: sku(&format!("s{i}")),
            name: format!("S{i}"),
            price: Cents(10),
            max_qty_per_order: 1,
            per_customer_limit: None,
        }));
        let items: Vec<_> = (0..LINES_PER_ORDER_MAX)
            .map(|i| item(&format!("s{i}"), 1))
            .collect();
        let (lines, total) = wide.price_items(&items).unwrap();
        assert_eq!(lines.len(), LINES_PER_ORDER_MAX);
        assert_eq!(total, Cents(10 * LINES_PER_ORDER_MAX as u64));
    }

    #[test]
    fn a_total_sums_every_line_and_a_sum_that_overflows_is_refused() {
        // Proves: the total adds all lines (not just the last), and lines that fit alone but not
        // together are refused as an overflow.
        let c = catalog();
        assert_eq!(
            c.price_items(&[item("hat", 2), item("gold", 1)]),
            Err(ItemsRejected::TotalAboveLimit {
                total: Cents(3_000 + u64::MAX / 2),
                max: ORDER_TOTAL_MAX
            })
        );
        assert_eq!(
            c.price_items(&[item("gold", 1), item("gold", 1)]),
            Err(ItemsRejected::DuplicateSku { sku: sku("gold") })
        );
        let two_golds = Catalog::new([
            Product {
                sku: sku("g1"),
                name: "G1".into(),
                price: Cents(u64::MAX / 2 + 1),
                max_qty_per_order: 1,
                per_customer_limit: None,
            },
            Product {
                sku: sku("g2"),
                name: "G2".into(),
                price: Cents(u64::MAX / 2 + 1),
                max_qty_per_order: 1,
                per_customer_limit: None,
            },
        ]);
        assert_eq!(
            two_golds.price_items(&[item("g1", 1), item("g2", 1)]),
            Err(ItemsRejected::TotalOverflow)
        );
    }

    #[test]
    fn an_order_may_total_the_most_a_payment_takes_and_not_a_cent_more() {
        // Proves the total's bound on both sides, over several lines: ORDER_TOTAL_MAX is
        // accepted, one cent more refused (an order no payment could cover is never taken).
        let product = |name: &str, price: u64| Product {
            sku: sku(name),
            name: name.into(),
            price: Cents(price),
            max_qty_per_order: 10,
            per_customer_limit: None,
        };
        let at = Catalog::new([product("a", 33_333_333), product("b", 0)]);
        let (_, total) = at.price_items(&[item("a", 3)]).unwrap();
        assert_eq!(total, ORDER_TOTAL_MAX);
        let over = Catalog::new([product("a", 33_333_333), product("b", 1)]);
        assert_eq!(
            over.price_items(&[item("a", 3), item("b", 1)]),
            Err(ItemsRejected::TotalAboveLimit {
                total: Cents(ORDER_TOTAL_MAX.0 + 1),
                max: ORDER_TOTAL_MAX
            })
        );
        assert!(over.price_items(&[item("a", 2), item("b", 1)]).is_ok());
    }

    #[test]
    fn the_catalog_lists_every_product_it_sells() {
        // Proves: the storefront listing (what `Listed` events record) has every product, by SKU.
        let skus: Vec<_> = catalog().products().map(|p| p.sku.clone()).collect();
        assert_eq!(skus, vec![sku("gold"), sku("hat")]);
    }
}
