import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { ReturnPage } from './components/ReturnPage';
import { RETURNED_PARAM, gatewayURL } from './config';
import './styles.css';

const params = new URLSearchParams(window.location.search);
const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root');

createRoot(root).render(
  <StrictMode>{params.has(RETURNED_PARAM) ? <ReturnPage params={params} /> : <App gateway={gatewayURL()} />}</StrictMode>,
);
