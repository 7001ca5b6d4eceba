import React, { useState } from "react";
import { createRoot } from "react-dom/client";
import { Agentation } from "agentation";
function ProductCard({ name = "Trail Runner 3" }) {
  const [qty, setQty] = useState(1);
  return (
    <section className="product-card" data-testid="product-card">
      <h2 className="product-name">{name}</h2>
      <p className="product-description">
        A light, grippy running shoe for muddy trails and long weekends.
      </p>
      <label>
        Quantity{" "}
        <input
          className="qty-input"
          type="number"
          min="1"
          value={qty}
          onChange={(e) => setQty(Number(e.target.value))}
        />
      </label>
      <button id="buy" className="btn btn-primary" data-testid="buy-button" type="button">
        Buy now
      </button>
    </section>
  );
}
function App({ endpoint }) {
  return (
    <main className="shop-page">
      <h1 className="shop-title">Agentation e2e shop</h1>
      <ProductCard />
      <Agentation endpoint={endpoint} />
    </main>
  );
}
const endpoint = new URLSearchParams(window.location.search).get("endpoint") ?? undefined;
createRoot(document.getElementById("root")).render(<App endpoint={endpoint} />);
// This module is served on its own after a JSX-only esbuild transform (classic
// runtime, no injected import), so the lines up to ProductCard's first hook
// call keep their line and column numbers (build.mjs checks): the toolbar's
// `sourceFile`, read from the stack frame of that hook call, then points at
// this very file, `src/page.jsx:5:25`.
// Keep comments below the code: esbuild drops comments and blank lines, which
// would shift the lines that follow them.
